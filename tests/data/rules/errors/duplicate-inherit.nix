let a = { x = 1; }; in { inherit (a) x; x = 2; }
