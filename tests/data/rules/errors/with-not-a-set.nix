with 1;
{ "a.age".publicKeys = [ k ]; }
