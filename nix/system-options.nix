# The options only the system modules have (NixOS's module.nix and nix-darwin's
# darwin-module.nix), with agenix's types and defaults on each: where the secrets appear, the
# mount point of the in-memory filesystem, and the identities (the SSH host keys).
{
  lib,
  pkgs,
  config,
  # nix-darwin: macOS's host keys are the identities even when nix-darwin does not manage sshd.
  isDarwin,
}:
let
  inherit (lib) literalExpression mkOption types;
  hostKeys = map (e: e.path) (
    lib.filter (e: e.type == "rsa" || e.type == "ed25519") config.services.openssh.hostKeys
  );
in
{
  ageBin = mkOption {
    type = types.str;
    default = "${pkgs.age}/bin/age";
    defaultText = literalExpression ''"''${pkgs.age}/bin/age"'';
    description = ''
      Accepted so that agenix configurations keep evaluating. Unused: ragenix decrypts
      in-process with the age library.
    '';
  };
  secretsDir = mkOption {
    type = types.path;
    default = "/run/agenix";
    description = "Directory (a symlink to the current generation) where secrets appear.";
  };
  secretsMountPoint = mkOption {
    type =
      types.addCheck types.str (
        s: (builtins.match "[ \t\n]*" s) == null && (builtins.match ".+/" s) == null
      )
      // {
        description = "${types.str.description} (with check: non-empty without trailing slash)";
      };
    default = "/run/agenix.d";
    description =
      if isDarwin then
        "Where the RAM disk holding the numbered generations is mounted."
      else
        "Where the ramfs holding the numbered generations is mounted.";
  };
  identityPaths = mkOption {
    type = types.listOf types.path;
    # nix-darwin's `services.openssh.enable` is null when macOS manages sshd.
    default =
      if (config.services.openssh.enable or false) == true then
        hostKeys
      else if isDarwin then
        [
          "/etc/ssh/ssh_host_ed25519_key"
          "/etc/ssh/ssh_host_rsa_key"
        ]
      else
        [ ];
    defaultText = literalExpression (
      ''
        the rsa and ed25519 entries of config.services.openssh.hostKeys when openssh is enabled,
      ''
      + (
        if isDarwin then
          ''else [ "/etc/ssh/ssh_host_ed25519_key" "/etc/ssh/ssh_host_rsa_key" ]''
        else
          "else [ ]"
      )
    );
    description = "Private keys (SSH host keys, age or plugin identity files) tried for decryption.";
  };
}
