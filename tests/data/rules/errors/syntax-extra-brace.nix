{
  "a.age".publicKeys = [ "k" ];
}
}
