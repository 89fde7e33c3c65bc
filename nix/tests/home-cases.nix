# home-manager configurations and what the real home-manager module system must make of them
# (eval-home.nix); see cases.nix for how they are used. Values pinned to agenix's
# modules/age-home.nix for the same configuration.
{
  lib,
  files ? name: "/var/lib/ragenix-test/${name}.age",
  identity ? null,
  # Used by eval-home.nix, which sets age.ragenix.package to it.
  package ? null,
}:
let
  eq =
    what: got: want:
    lib.optional (got != want) "${what}: got ${builtins.toJSON got}, want ${builtins.toJSON want}";

  identities = lib.optionalAttrs (identity != null) { age.identityPaths = [ identity ]; };

  # The user service runs the installer on the manifest, and starts with the session.
  service =
    r:
    eq "Service.Type" (lib.toList r.service.Service.Type) [ "oneshot" ]
    ++ eq "RemainAfterExit" (lib.toList r.service.Service.RemainAfterExit) [ true ]
    ++ eq "WantedBy" r.service.Install.WantedBy [ "default.target" ]
    ++ lib.optional (
      map (
        builtins.match "${lib.escapeRegex "${r.package}/bin/ragenix-install"} /nix/store/[a-z0-9]{32}-ragenix-home-manifest\\.json"
      ) (lib.toList r.service.Service.ExecStart) != [ [ ] ]
    ) "ExecStart runs no installer: ${builtins.toJSON r.service.Service.ExecStart}"
    ++ eq "unit file linked" r.unitLinked true
    ++ eq "activation entries" r.activation [ ];
in
{
  # A secret and nothing else: agenix's home defaults.
  defaults = {
    configuration = {
      age.secrets.token.file = files "token";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ service r
      ++ eq "identityPaths" r.age.identityPaths [
        "/home/alice/.ssh/id_ed25519"
        "/home/alice/.ssh/id_rsa"
      ]
      ++ eq "secretsDir" r.age.secretsDir "\${XDG_RUNTIME_DIR}/agenix"
      ++ eq "secretsMountPoint" r.age.secretsMountPoint "\${XDG_RUNTIME_DIR}/agenix.d"
      ++ eq "secrets" r.age.secrets {
        token = {
          name = "token";
          file = files "token";
          path = "\${XDG_RUNTIME_DIR}/agenix/token";
          mode = "0400";
          symlink = true;
          restartUnits = [ ];
          reloadUnits = [ ];
          format = "binary";
          key = null;
        };
      };
  };

  # Custom paths (with `$VAR` and `~`), a copy instead of a link, a template, unit lists.
  full = {
    configuration =
      { config, ... }:
      {
        imports = [ identities ];
        age.secrets = {
          token.file = files "token";
          linked = {
            file = files "linked";
            path = "$XDG_RUNTIME_DIR/app/linked";
            restartUnits = [ "app.service" ];
          };
          copied = {
            file = files "copied";
            path = "~/.config/app/key";
            symlink = false;
            mode = "0600";
          };
        };
        age.templates."app.conf".content = "token=${config.age.placeholder.token}\n";
      };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ service r
      ++ eq "template path" r.age.templates."app.conf".path "\${XDG_RUNTIME_DIR}/agenix/templates/app.conf"
      ++ eq "copied" (removeAttrs r.age.secrets.copied [ "file" ]) {
        name = "copied";
        path = "~/.config/app/key";
        mode = "0600";
        symlink = false;
        restartUnits = [ ];
        reloadUnits = [ ];
        format = "binary";
        key = null;
      };
  };
}
