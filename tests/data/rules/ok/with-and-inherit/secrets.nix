let
  users = { alice = "ka"; bob = "kb"; };
  systems = { host1 = "kh1"; };
  alice = "shadowing wins over with";
in
with users;
with systems;
{
  "w.age".publicKeys = [ alice bob host1 ];
  inherit (users) bob;
  inherit (systems) host1;
  inner = let inherit alice; in { inherit alice; x = builtins.hasAttr "bob" users; };
}
