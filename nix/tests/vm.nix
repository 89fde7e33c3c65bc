# Boots a NixOS VM with two secrets (one root-only, one for a user through a custom path) and
# a template, and checks content, mode and owner, then that a switch keeps them in place.
{ pkgs, module }:
let
  # A throwaway identity and the secrets encrypted to it, built in the sandbox.
  fixtures = pkgs.runCommand "ragenix-vm-fixtures" { nativeBuildInputs = [ pkgs.age ]; } ''
    mkdir $out
    age-keygen -o $out/identity.txt 2>/dev/null
    recipient=$(age-keygen -y $out/identity.txt)
    printf 'hello-root' | age -r "$recipient" -o $out/root-only.age
    printf 'hello-alice' | age -a -r "$recipient" -o $out/for-alice.age
  '';
in
pkgs.testers.runNixOSTest {
  name = "ragenix";

  nodes.machine =
    { config, ... }:
    {
      imports = [ module ];
      users.users.alice = {
        isNormalUser = true;
        group = "users";
      };
      age.identityPaths = [ "${fixtures}/identity.txt" ];
      age.secrets.root-only.file = "${fixtures}/root-only.age";
      age.secrets.for-alice = {
        file = "${fixtures}/for-alice.age";
        owner = "alice";
        mode = "0440";
        path = "/home/alice/secret";
      };
      age.templates."app.conf" = {
        content = "token=${config.age.placeholder.root-only}\n";
        mode = "0444";
      };
    };

  testScript = ''
    machine.wait_for_unit("multi-user.target")

    def check(path, content, perms):
        machine.succeed(f"test \"$(cat {path})\" = '{content}'")
        got = machine.succeed(f"stat -L -c %a:%U:%G {path}").strip()
        assert got == perms, f"{path}: {got} != {perms}"

    check("/run/agenix/root-only", "hello-root", "400:root:root")
    check("/run/agenix/for-alice", "hello-alice", "440:alice:users")
    check("/home/alice/secret", "hello-alice", "440:alice:users")
    check("/run/agenix/templates/app.conf", "token=hello-root", "444:root:root")
    machine.succeed("grep -q ' /run/agenix.d ramfs ' /proc/mounts")
    machine.succeed("test \"$(readlink /run/agenix)\" = /run/agenix.d/1")
    machine.fail("su alice -c 'cat /run/agenix/root-only'")
    machine.succeed("su alice -c 'cat /home/alice/secret'")

    machine.succeed("/run/current-system/bin/switch-to-configuration test")
    machine.succeed("test \"$(readlink /run/agenix)\" = /run/agenix.d/2")
    machine.succeed("test ! -e /run/agenix.d/1")
    check("/run/agenix/for-alice", "hello-alice", "440:alice:users")
  '';
}
