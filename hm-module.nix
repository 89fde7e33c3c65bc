# home-manager module: agenix's home-manager options (`age.secrets.<n>.{file,path,mode,symlink}`,
# `age.identityPaths`, `age.secretsDir` under $XDG_RUNTIME_DIR) plus templates and
# restartUnits for user units. `$XDG_RUNTIME_DIR` and `~` are expanded by the installer at run
# time, in a systemd user oneshot that re-runs whenever the manifest changes. On macOS, where
# there is neither systemd nor $XDG_RUNTIME_DIR, the launchd agent `agenix` runs it instead
# (as home-manager's own modules do), under the per-user `$TMPDIR`.
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
  inherit (pkgs.stdenv.hostPlatform) isDarwin;

  manifest = import ./nix/manifest-file.nix {
    inherit pkgs lib cfg;
    kind = "home";
    platform = if isDarwin then "darwin" else "linux";
  };

  # macOS's per-user temp directory (0700, under /var/folders): what `$TMPDIR` in the
  # default paths means, whatever launchd put in the agent's environment.
  runtimeDir = if isDarwin then "TMPDIR" else "XDG_RUNTIME_DIR";
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
      default = "\${${runtimeDir}}/agenix";
      defaultText = literalExpression ''"''${XDG_RUNTIME_DIR}/agenix" (on macOS "''${TMPDIR}/agenix")'';
      description = "Directory (a symlink to the current generation) where secrets appear; expanded at run time.";
    };
    secretsMountPoint = mkOption {
      type = types.str;
      default = "\${${runtimeDir}}/agenix.d";
      defaultText = literalExpression ''"''${XDG_RUNTIME_DIR}/agenix.d" (on macOS "''${TMPDIR}/agenix.d")'';
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
    })
    (mkIf ((cfg.secrets != { } || cfg.templates != { }) && isDarwin) {
      # home-manager reloads an agent whose plist changed, and RunAtLoad runs it then and at
      # login; launchd retries it until it succeeds.
      launchd.agents.agenix = {
        enable = true;
        config = {
          ProgramArguments = [
            "/bin/sh"
            "-c"
            ''TMPDIR="$(/usr/bin/getconf DARWIN_USER_TEMP_DIR)" && export TMPDIR && exec "$0" "$1"''
            installer
            "${manifest}"
          ];
          RunAtLoad = true;
          KeepAlive.SuccessfulExit = false;
          ProcessType = "Background";
        };
      };
    })
    (mkIf ((cfg.secrets != { } || cfg.templates != { }) && !isDarwin) {
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
