let
  keys = [ "a" "b" ];
in
{
  "a.age".publicKeys = keys
  "b.age".publicKeys = keys;
}
