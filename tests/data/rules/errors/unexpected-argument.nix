let mk = { keys }: { publicKeys = keys; }; in
{
  "a.age" = mk { keys = [ ]; armor = true; };
}
