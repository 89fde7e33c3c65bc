let other = import ./other.nix; in
{ key = "k-main"; "c.age".publicKeys = [ other.key ]; }
