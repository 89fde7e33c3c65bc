{
  "a.age".publicKeys = [ "k" ]
}
