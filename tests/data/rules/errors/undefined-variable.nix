let unused = user1; in { "a.age".publicKeys = [ ]; }
