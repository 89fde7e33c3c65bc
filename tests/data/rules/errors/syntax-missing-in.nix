let
  k = "age1";
{
  "a.age".publicKeys = [ k ];
}
