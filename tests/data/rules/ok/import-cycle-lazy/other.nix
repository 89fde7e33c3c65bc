{ key = "k-other"; back = (import ./secrets.nix).key; }
