{ "a.age".publicKeys = [ (x: x) ]; }
