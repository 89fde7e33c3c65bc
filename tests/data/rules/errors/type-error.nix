{
  "a.age".publicKeys = [ ("key" + 1) ];
}
