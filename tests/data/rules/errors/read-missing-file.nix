{
  "a.age".publicKeys = [ (builtins.readFile ./no-such-key.pub) ];
}
