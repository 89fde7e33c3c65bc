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
    mkMerge
    mkOption
    types
    ;

  cfg = config.age;
  installer = "${cfg.ragenix.package}/bin/ragenix-install";

  manifest = import ./nix/manifest-file.nix {
    inherit pkgs lib cfg;
    kind = "home";
  };
in
{
  options.age = {
    package = mkOption {
      type = types.package;
      default = pkgs.age;
      defaultText = literalExpression "pkgs.age";
      description = "Accepted for agenix configurations; unused (ragenix decrypts in-process).";
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
  // import ./nix/entry-options.nix {
    inherit lib cfg;
    kind = "home";
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
    })
  ];
}
