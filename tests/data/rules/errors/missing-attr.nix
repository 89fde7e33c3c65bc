let keys = { alice = "k"; }; in
{
  "a.age".publicKeys = [ keys.bob ];
}
