let mk = { keys }: { publicKeys = keys; }; in
{
  "a.age" = mk { };
}
