let
  k = "age1;
in
{
  "a.age".publicKeys = [ k ];
}
