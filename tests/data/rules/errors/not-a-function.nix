let k = "key"; in
{
  "a.age".publicKeys = [ (k 1) ];
}
