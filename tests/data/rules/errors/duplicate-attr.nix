{
  "a.age".publicKeys = [ ];
  "a.age".publicKeys = [ "k" ];
}
