# NixOS module: agenix's `age.*` options (same names, types and defaults) plus restartUnits,
# reloadUnits, templates, placeholders and plugins. It only serialises the options into a
# manifest (nix/manifest.nix) and runs `ragenix-install` on it; all logic lives in Rust.
# Works from the flake and when imported directly: `imports = [ "${ragenix}/module.nix" ];`.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    literalExpression
    mapAttrsToList
    mkIf
    mkMerge
    mkOption
    types
    ;

  cfg = config.age;
  users = config.users.users;

  # systemd-sysusers and userborn create users from a unit, not from the `users` activation
  # step; the secrets then come from a oneshot service ordered after them.
  useService =
    (config.systemd.sysusers.enable or false) || (config.services.userborn.enable or false);

  installer = "${cfg.ragenix.package}/bin/ragenix-install";

  manifest = pkgs.writeTextFile {
    name = "ragenix-manifest.json";
    text = builtins.toJSON (
      import ./nix/manifest.nix {
        inherit (cfg)
          secrets
          templates
          identityPaths
          secretsDir
          secretsMountPoint
          ;
        mode = "system";
        keepGenerations = cfg.ragenix.keepGenerations;
        dirGroup = "keys";
        pluginPaths = map (p: "${p}/bin") cfg.plugins;
        # switch-to-configuration restarts what the activation lists name; the service
        # variant asks systemctl itself.
        restartListFile = if useService then null else "/run/nixos/activation-restart-list";
        reloadListFile = if useService then null else "/run/nixos/activation-reload-list";
      }
    );
    checkPhase = ''
      ${installer} --check ${lib.optionalString (!cfg.ragenix.checkFiles) "--skip-files"} "$target"
    '';
  };

  unitsOptions = {
    restartUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "nginx.service" ];
      description = "Units restarted (`systemctl try-restart`) when this file changes.";
    };
    reloadUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "nginx.service" ];
      description = "Units reloaded (`systemctl try-reload-or-restart`) when this file changes.";
    };
  };

  ownershipOptions = config: {
    mode = mkOption {
      type = types.str;
      default = "0400";
      description = "Permissions of the decrypted file, as an octal mode.";
    };
    owner = mkOption {
      type = types.str;
      default = "0";
      description = "User (name or numeric id) owning the decrypted file.";
    };
    group = mkOption {
      type = types.str;
      default = users.${config.owner}.group or "0";
      defaultText = literalExpression ''users.''${config.owner}.group or "0"'';
      description = "Group (name or numeric id) of the decrypted file.";
    };
    symlink = lib.mkEnableOption "symlinking the file from `path` into secretsDir" // {
      default = true;
    };
  };

  secretType = types.submodule (
    { config, name, ... }:
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
          description = "Name of the file in `age.secretsDir`.";
        };
        file = mkOption {
          type = types.path;
          description = "Age file the secret is decrypted from.";
        };
        path = mkOption {
          type = types.str;
          default = "${cfg.secretsDir}/${config.name}";
          defaultText = literalExpression ''"''${config.age.secretsDir}/''${name}"'';
          description = "Where the decrypted secret is installed.";
        };
      }
      // ownershipOptions config
      // unitsOptions;
    }
  );

  templateType = types.submodule (
    { config, name, ... }:
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
          description = "Name of the file in `\${age.secretsDir}/templates`.";
        };
        content = mkOption {
          type = types.lines;
          example = literalExpression ''"password=''${config.age.placeholder.db-password}"'';
          description = "Text of the file; `config.age.placeholder.<secret>` marks where a secret goes.";
        };
        path = mkOption {
          type = types.str;
          default = "${cfg.secretsDir}/templates/${config.name}";
          defaultText = literalExpression ''"''${config.age.secretsDir}/templates/''${name}"'';
          description = "Where the rendered file is installed.";
        };
      }
      // ownershipOptions config
      // unitsOptions;
    }
  );
in
{
  imports = [ (lib.mkRenamedOptionModule [ "age" "sshKeyPaths" ] [ "age" "identityPaths" ]) ];

  options.age = {
    ageBin = mkOption {
      type = types.str;
      default = "${pkgs.age}/bin/age";
      defaultText = literalExpression ''"''${pkgs.age}/bin/age"'';
      description = ''
        Accepted so that agenix configurations keep evaluating. Unused: ragenix decrypts
        in-process with the age library.
      '';
    };
    secrets = mkOption {
      type = types.attrsOf secretType;
      default = { };
      description = "Attrset of secrets.";
    };
    templates = mkOption {
      type = types.attrsOf templateType;
      default = { };
      description = "Files rendered from text with secrets substituted for placeholders.";
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
      description = "Where the ramfs holding the numbered generations is mounted.";
    };
    identityPaths = mkOption {
      type = types.listOf types.path;
      default =
        if (config.services.openssh.enable or false) then
          map (e: e.path) (
            lib.filter (e: e.type == "rsa" || e.type == "ed25519") config.services.openssh.hostKeys
          )
        else
          [ ];
      defaultText = literalExpression ''
        the rsa and ed25519 entries of config.services.openssh.hostKeys when openssh is enabled,
        else [ ]
      '';
      description = "Private keys (SSH host keys, age or plugin identity files) tried for decryption.";
    };
  }
  // import ./nix/common-options.nix { inherit lib pkgs cfg; };

  config = mkIf (cfg.secrets != { } || cfg.templates != { }) (mkMerge [
    {
      assertions = [
        {
          assertion = cfg.identityPaths != [ ];
          message = "age.identityPaths must be set.";
        }
      ]
      ++ mapAttrsToList (n: s: {
        assertion = builtins.match "0?o?[0-7]{1,4}" s.mode != null;
        message = ''age.secrets."${n}".mode = "${s.mode}" is not an octal mode such as "0400".'';
      }) cfg.secrets
      ++ mapAttrsToList (n: t: {
        assertion = builtins.match "0?o?[0-7]{1,4}" t.mode != null;
        message = ''age.templates."${n}".mode = "${t.mode}" is not an octal mode such as "0400".'';
      }) cfg.templates;
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
        unitConfig.DefaultDependencies = false;
        restartTriggers = [ manifest ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${installer} ${manifest}";
        };
      };
    })
  ]);
}
