let
  a = b + 1;
  b = 41;
  keys = rec { alice = "ssh-ed25519 AAAA alice"; bob = "ssh-ed25519 AAAA bob"; all = [ alice bob ]; };
  set = rec { x = y; y = z; z = "deep"; };
  even = n: if n == 0 then true else odd (n - 1);
  odd = n: if n == 0 then false else even (n - 1);
in
{
  "answer.age" = { publicKeys = keys.all; extra = a; chain = set.x; parity = even 101; };
}
