{
  "a.age".publicKeys = [ "k" ;
}
