{
  a.age.publicKeys = [ "k" ];
  "b.age".publicKeys: [ "k" ];
}
