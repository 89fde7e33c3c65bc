# An unused binding that would fail must not be evaluated.
let
  broken = throw "never forced";
  alsoBroken = builtins.readFile ./does-not-exist;
  missing = { }.nope;
  user = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";
  lazyList = [ (throw "element never forced") user ];
in
{
  "a.age".publicKeys = [ user ];
  "b.age".publicKeys = [ (builtins.elemAt lazyList 1) ];
  "c.age" = { publicKeys = [ user ]; armor = builtins.length lazyList == 2; };
}
