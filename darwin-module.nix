# nix-darwin module: agenix's darwin `age.*` options (the same as on NixOS, with macOS's host
# keys as default identities) plus templates, placeholders and plugins. Like agenix, secrets are
# installed at each switch (root-owned ones before users are created, owners after) and at boot
# by the launchd daemon `activate-agenix`, retried until it succeeds. The secrets live on an
# HFS+ RAM disk owned by the `admin` group, made by `ragenix-install` as agenix makes it.
# Flake: `ragenix.darwinModules.default`; without flakes: `imports = [ "${ragenix}/darwin-module.nix" ];`.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkAfter mkIf mkMerge;

  cfg = config.age;
  users = config.users.users;

  installer = "${cfg.ragenix.package}/bin/ragenix-install";

  manifest = import ./nix/manifest-file.nix {
    inherit pkgs lib cfg;
    kind = "system";
    platform = "darwin";
  };

  # systemd units do not exist on macOS: a restart or reload list would name nothing.
  unitLists =
    kind: entries:
    lib.concatLists (
      lib.mapAttrsToList (
        name: e:
        map (field: {
          assertion = e.${field} == [ ];
          message = "age.${kind}.\"${name}\".${field}: systemd units do not exist on nix-darwin; remove it";
        }) [ "restartUnits" "reloadUnits" ]
      ) entries
    );

  # The RAM-disk tools (`hdiutil`, `newfs_hfs`, `mount`, `diskutil`) are macOS's own; the
  # installer finds them on this root-owned PATH and nowhere else.
  toolPath = "/usr/bin:/bin:/usr/sbin:/sbin";
in
{
  imports = [ (lib.mkRenamedOptionModule [ "age" "sshKeyPaths" ] [ "age" "identityPaths" ]) ];

  options.age =
    import ./nix/system-options.nix {
      inherit lib pkgs config;
      isDarwin = true;
    }
    // import ./nix/entry-options.nix {
      inherit lib cfg users;
      kind = "system";
    }
    // import ./nix/common-options.nix { inherit lib pkgs cfg; };

  config = mkMerge [
    { age.ragenix.manifest = manifest; }
    (mkIf (cfg.secrets != { } || cfg.templates != { }) {
      assertions = [
        {
          assertion = cfg.identityPaths != [ ];
          message = "age.identityPaths must be set.";
        }
      ]
      ++ unitLists "secrets" cfg.secrets
      ++ unitLists "templates" cfg.templates;

      system.activationScripts = {
        # Root-owned secrets exist before users are created, as with agenix.
        preActivation.text = ''
          PATH=${toolPath} ${installer} --phase install ${manifest}
        '';
        # Owners once users and groups exist.
        users.text = mkAfter ''
          PATH=${toolPath} ${installer} --phase chown ${manifest}
        '';
      };

      # At boot, when no switch runs; retried by launchd until every secret is installed.
      launchd.daemons.activate-agenix = {
        command = "${installer} ${manifest}";
        path = [ toolPath ];
        serviceConfig = {
          RunAtLoad = true;
          KeepAlive.SuccessfulExit = false;
        };
      };
    })
  ];
}
