let
  a = b;
  b = a;
in
{ "a.age".publicKeys = [ a ]; }
