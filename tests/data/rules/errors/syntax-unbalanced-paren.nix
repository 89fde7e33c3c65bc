{
  "a.age".publicKeys = [ (builtins.readFile ./k.pub ];
}
