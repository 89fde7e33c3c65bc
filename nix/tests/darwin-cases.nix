# nix-darwin configurations and what the real nix-darwin module system must make of them
# (eval-darwin.nix); see cases.nix for how they are used. Values pinned to agenix's
# modules/age.nix on darwin for the same configuration.
{
  lib,
  files ? name: "/var/lib/ragenix-test/${name}.age",
  identity ? null,
  # Used by eval-darwin.nix, which sets age.ragenix.package to it.
  package ? null,
}:
let
  eq =
    what: got: want:
    lib.optional (got != want) "${what}: got ${builtins.toJSON got}, want ${builtins.toJSON want}";

  identities = lib.optionalAttrs (identity != null) { age.identityPaths = [ identity ]; };

  run = r: "${lib.escapeRegex "${r.package}/bin/ragenix-install"}";
  manifestPath = "/nix/store/[a-z0-9]{32}-ragenix-manifest\\.json";

  # agenix's daemon: started at load, restarted until it exits 0, running the installer on
  # the manifest once the store is mounted; switches install from the activation script,
  # before users are created and chowned after, like agenix.
  daemonAndActivation =
    r:
    eq "Label" r.daemon.Label "org.nixos.activate-agenix"
    ++ eq "RunAtLoad" r.daemon.RunAtLoad true
    ++ eq "KeepAlive.SuccessfulExit" r.daemon.KeepAlive.SuccessfulExit false
    ++ eq "plist installed" r.daemon.plist true
    ++ eq "daemon PATH" r.daemon.EnvironmentVariables.PATH "/usr/bin:/bin:/usr/sbin:/sbin"
    ++ lib.optional (
      builtins.match "/bin/wait4path /nix/store && exec ${run r} (${manifestPath})" (
        lib.elemAt r.daemon.ProgramArguments 2
      ) != [ r.manifest.path ]
    ) "the daemon does not run the installer on the manifest: ${builtins.toJSON r.daemon.ProgramArguments}"
    ++ eq "daemon shell" (lib.take 2 r.daemon.ProgramArguments) [
      "/bin/sh"
      "-c"
    ]
    ++ lib.optional (
      map (l: builtins.match "PATH=/usr/bin:/bin:/usr/sbin:/sbin ${run r} --phase (install|chown) (${manifestPath})|(echo .setting up users.*)" l) r.activation
      != [
        [
          "install"
          r.manifest.path
          null
        ]
        [
          null
          null
          "echo \"setting up users...\" >&2"
        ]
        [
          "chown"
          r.manifest.path
          null
        ]
      ]
    ) "activation order: ${builtins.toJSON r.activation}"
    ++ eq "manifest platform" r.manifest.json.platform "darwin"
    ++ eq "manifest dirGroup" r.manifest.json.dirGroup "admin"
    ++ eq "manifest restart lists" [
      r.manifest.json.restartListFile
      r.manifest.json.reloadListFile
    ] [ null null ];

  entry = name: extra: {
    inherit name;
    file = files name;
    path = "/run/agenix/${name}";
    mode = "0400";
    owner = "0";
    group = "0";
    symlink = true;
    restartUnits = [ ];
    reloadUnits = [ ];
    format = "binary";
    key = null;
  } // extra;
in
{
  # A secret and nothing else: macOS's host keys, agenix's paths.
  defaults = {
    configuration = {
      age.secrets.db.file = files "db";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ eq "warnings" r.warnings [ ]
      ++ daemonAndActivation r
      ++ eq "identityPaths" r.age.identityPaths [
        "/etc/ssh/ssh_host_ed25519_key"
        "/etc/ssh/ssh_host_rsa_key"
      ]
      ++ eq "secretsDir" r.age.secretsDir "/run/agenix"
      ++ eq "secretsMountPoint" r.age.secretsMountPoint "/run/agenix.d"
      ++ eq "secrets" r.age.secrets { db = entry "db" { }; };
  };

  # nix-darwin managing sshd: its rsa and ed25519 host keys, in its order.
  openssh = {
    configuration = {
      services.openssh.enable = true;
      age.secrets.db.file = files "db";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ eq "identityPaths" r.age.identityPaths [
        "/etc/ssh/ssh_host_rsa_key"
        "/etc/ssh/ssh_host_ed25519_key"
      ];
  };

  # What the runtime test installs: owners, modes, a custom path, a template.
  full = {
    configuration = {
      imports = [ identities ];
      age.secrets.db = {
        file = files "db";
        mode = "0440";
        owner = "nobody";
        group = "admin";
      };
      age.secrets.token = {
        file = files "token";
        path = "/run/ragenix/token";
      };
      age.templates."app.env".content = "TOKEN=<RAGENIX:PLACEHOLDER:token>\n";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ daemonAndActivation r
      ++ eq "secrets" r.age.secrets {
        db = entry "db" {
          mode = "0440";
          owner = "nobody";
          group = "admin";
        };
        token = entry "token" { path = "/run/ragenix/token"; };
      }
      ++ eq "placeholder" r.age.placeholder.token "<RAGENIX:PLACEHOLDER:token>";
  };

  # systemd units do not exist on macOS: naming one is an error that names the option.
  units = {
    configuration = {
      age.secrets.db = {
        file = files "db";
        restartUnits = [ "nginx.service" ];
      };
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [
        "age.secrets.\"db\".restartUnits: systemd units do not exist on nix-darwin; remove it"
      ];
  };

  # agenix's old option name still works, with the rename's warning.
  sshKeyPaths = {
    configuration = {
      age.sshKeyPaths = [ "/etc/ssh/other_key" ];
      age.secrets.db.file = files "db";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ eq "identityPaths" r.age.identityPaths [ "/etc/ssh/other_key" ]
      ++ lib.optional (
        builtins.length r.warnings != 1 || !lib.hasInfix "age.sshKeyPaths" (lib.head r.warnings)
      ) "warnings: ${builtins.toJSON r.warnings}";
  };
}
