let k = "age1a"; in
{
  "x.age".publicKeys = [ k ];
  "x.age".armor = true;
  a.b.c = 1;
  a.b.d = 2;
  a.e = { f = 3; };
  g = { h = 1; };
  g.i = 2;
  "with/slash.age".publicKeys = [ k ];
  noext.publicKeys = [ ];
  ${"dyn" + "amic"}.publicKeys = [ k ];
  "interp-${k}.age".publicKeys = [ ];
  ${null} = "dropped";
}
