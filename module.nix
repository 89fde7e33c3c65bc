# NixOS module: agenix's `age.*` options (same names, types and defaults) plus restartUnits,
# reloadUnits, templates, placeholders and plugins. It only serialises the options into a
# manifest (nix/manifest.nix) and runs `ragenix-install` on it; all logic lives in Rust.
# Works from the flake and when imported directly: `imports = [ "${ragenix}/module.nix" ];`.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib) mkIf mkMerge;

  cfg = config.age;
  users = config.users.users;

  # systemd-sysusers and userborn create users from a unit, not from the `users` activation
  # step; the secrets then come from a oneshot service ordered after them.
  useService =
    (config.systemd.sysusers.enable or false) || (config.services.userborn.enable or false);

  installer = "${cfg.ragenix.package}/bin/ragenix-install";

  credentials = import ./nix/credentials.nix { inherit lib cfg useService; };

  # Paths in a unit file are split at blanks unless quoted and expand `%` specifiers.
  unitPath = p: "\"${lib.replaceStrings [ "%" "\\" "\"" ] [ "%%" "\\\\" "\\\"" ] (toString p)}\"";

  manifest = import ./nix/manifest-file.nix {
    inherit pkgs lib cfg;
    kind = "system";
    # switch-to-configuration restarts what the activation lists name; the service variant
    # asks systemctl itself.
    extra = lib.optionalAttrs (!useService) {
      restartListFile = "/run/nixos/activation-restart-list";
      reloadListFile = "/run/nixos/activation-reload-list";
    };
  };
in
{
  imports = [ (lib.mkRenamedOptionModule [ "age" "sshKeyPaths" ] [ "age" "identityPaths" ]) ];

  options.age =
    import ./nix/system-options.nix {
      inherit lib pkgs config;
      isDarwin = false;
    }
  // import ./nix/entry-options.nix {
    inherit lib cfg users;
    kind = "system";
    credentials = true;
  }
  // import ./nix/common-options.nix { inherit lib pkgs cfg; };

  config = mkMerge [
    { age.ragenix.manifest = manifest; }
    (mkIf (cfg.secrets != { } || cfg.templates != { }) (mkMerge [
      {
        assertions = [
          {
            assertion = cfg.identityPaths != [ ];
            message = "age.identityPaths must be set.";
          }
        ]
        ++ credentials.assertions
        ++ import ./nix/impermanence.nix {
          inherit lib config;
          inherit (utils) fsNeededForBoot;
          checkMounts = !useService;
        };
        systemd.services = credentials.services;
      }

      (mkIf (!useService) {
        # Same steps and ordering as agenix, so configurations depending on them keep working.
        system.activationScripts = {
          agenixNewGeneration = {
            text = "${installer} --phase mount ${manifest}";
            deps = [ "specialfs" ];
          };
          # Root-owned secrets exist before users are created (hashedPasswordFile).
          agenixInstall = {
            text = "${installer} --phase install ${manifest}";
            deps = [
              "agenixNewGeneration"
              "specialfs"
            ];
          };
          users.deps = [ "agenixInstall" ];
          agenixChown = {
            text = "${installer} --phase chown ${manifest}";
            deps = [
              "users"
              "groups"
            ];
          };
          agenix = {
            text = "";
            deps = [ "agenixChown" ];
          };
        };
      })

      (mkIf useService {
        systemd.services.agenix-install-secrets = {
          description = "Install age secrets";
          wantedBy = [ "sysinit.target" ];
          after = [
            "systemd-sysusers.service"
            "userborn.service"
          ];
          before = [
            "sysinit.target"
            "shutdown.target"
          ];
          conflicts = [ "shutdown.target" ];
          unitConfig = {
            DefaultDependencies = false;
            # The identities may live on file systems mounted late (impermanence's /persist).
            RequiresMountsFor = map unitPath cfg.identityPaths;
          };
          restartTriggers = [ manifest ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            ExecStart = "${installer} ${manifest}";
          };
        };
      })
    ]))
  ];
}
