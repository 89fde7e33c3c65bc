let
  k = "key";
  check = x: assert builtins.isString x; x;
in
{
  "a.age".publicKeys = [ (check k) ];
  "b.age".publicKeys = if k == "key" then [ k k ] else throw "no";
  "c.age".publicKeys = [ (if builtins ? fetchGit then "has" else "not") ];
  "d.age".publicKeys = [ "x" ];
  "d.age".armor = !(1 > 2) && (1 != 2);
}
