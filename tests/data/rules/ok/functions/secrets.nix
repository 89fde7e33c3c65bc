let
  mk = { keys, armor ? false, extra ? "x-${toString armor}", ... }@args: {
    publicKeys = keys;
    inherit armor;
    e = extra;
    n = builtins.length (builtins.attrNames args);
  };
  twice = f: x: f (f x);
  add = a: b: a + b;
  functor = { __functor = self: x: x + self.base; base = 10; };
in
{
  "f1.age" = mk { keys = [ "k1" ]; };
  "f2.age" = mk { keys = [ "k2" ]; armor = true; other = 1; };
  "f3.age" = { publicKeys = [ ]; v = twice (add 3) 1; w = functor 5; };
}
