# home-manager module: agenix's home-manager options (`age.secrets.<n>.{file,path,mode,symlink}`,
# `age.identityPaths`, `age.secretsDir` under $XDG_RUNTIME_DIR) plus templates and
# restartUnits for user units. `$XDG_RUNTIME_DIR` and `~` are expanded by the installer at run
# time, in a systemd user oneshot that re-runs whenever the manifest changes.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    literalExpression
    mkIf
    mkOption
    types
    ;

  cfg = config.age;
  installer = "${cfg.ragenix.package}/bin/ragenix-install";

  manifest = pkgs.writeTextFile {
    name = "ragenix-home-manifest.json";
    text = builtins.toJSON (
      import ./nix/manifest.nix {
        inherit (cfg)
          secrets
          templates
          identityPaths
          secretsDir
          secretsMountPoint
          ;
        mode = "home";
        keepGenerations = cfg.ragenix.keepGenerations;
        pluginPaths = map (p: "${p}/bin") cfg.plugins;
      }
    );
    checkPhase = ''
      ${installer} --check ${lib.optionalString (!cfg.ragenix.checkFiles) "--skip-files"} "$target"
    '';
  };

  commonOptions = config: defaultPath: {
    path = mkOption {
      type = types.str;
      default = defaultPath;
      description = "Where the decrypted file is installed (`$VAR` and `~` are expanded).";
    };
    mode = mkOption {
      type = types.str;
      default = "0400";
      description = "Permissions of the decrypted file, as an octal mode.";
    };
    symlink = lib.mkEnableOption "symlinking the file from `path` into secretsDir" // {
      default = true;
    };
    restartUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "User units restarted when this file changes.";
    };
    reloadUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "User units reloaded when this file changes.";
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
      }
      // commonOptions config "${cfg.secretsDir}/${config.name}";
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
          description = "Text of the file; `config.age.placeholder.<secret>` marks where a secret goes.";
        };
      }
      // commonOptions config "${cfg.secretsDir}/templates/${config.name}";
    }
  );
in
{
  options.age = {
    package = mkOption {
      type = types.package;
      default = pkgs.age;
      defaultText = literalExpression "pkgs.age";
      description = "Accepted for agenix configurations; unused (ragenix decrypts in-process).";
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
    identityPaths = mkOption {
      type = types.listOf types.path;
      default = [
        "${config.home.homeDirectory}/.ssh/id_ed25519"
        "${config.home.homeDirectory}/.ssh/id_rsa"
      ];
      defaultText = literalExpression ''
        [ "''${config.home.homeDirectory}/.ssh/id_ed25519" "''${config.home.homeDirectory}/.ssh/id_rsa" ]
      '';
      description = "Private keys tried for decryption.";
    };
    secretsDir = mkOption {
      type = types.str;
      default = "\${XDG_RUNTIME_DIR}/agenix";
      description = "Directory (a symlink to the current generation) where secrets appear; expanded at run time.";
    };
    secretsMountPoint = mkOption {
      type = types.str;
      default = "\${XDG_RUNTIME_DIR}/agenix.d";
      description = "Directory holding the numbered generations; expanded at run time.";
    };
  }
  // import ./nix/common-options.nix { inherit lib pkgs cfg; };

  config = mkIf (cfg.secrets != { } || cfg.templates != { }) {
    assertions = [
      {
        assertion = cfg.identityPaths != [ ];
        message = "age.identityPaths must be set.";
      }
    ];

    systemd.user.services.agenix = {
      Unit.Description = "Install age secrets";
      Service = {
        Type = "oneshot";
        # Kept "active" so that home-manager restarts it when the manifest (ExecStart) changes.
        RemainAfterExit = true;
        ExecStart = "${installer} ${manifest}";
      };
      Install.WantedBy = [ "default.target" ];
    };
  };
}
