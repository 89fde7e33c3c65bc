let
  users = import ./keys/users.nix;
  hosts = import ./hosts;
  shared = import ./dir/shared.nix { inherit users; };
  fromFile = builtins.readFile ./keys/admin.pub;
  entries = builtins.readDir ./keys;
in
with (import ./keys/users.nix);
{
  "imported.age".publicKeys = [ alice ] ++ hosts.all;
  "shared.age".publicKeys = shared.keys;
  "file.age".publicKeys = [ fromFile ];
  "dir.age" = { publicKeys = [ ]; files = entries; exists = [ (builtins.pathExists ./keys/admin.pub) (builtins.pathExists ./nope) ]; };
  "same.age" = { publicKeys = [ ]; once = (import ./keys/users.nix) == users; };
  inherit (import ./keys/users.nix) bob;
}
