{
  "a.age".publicKeys = [ (builtins.elemAt [ "k" ] 3) ];
}
