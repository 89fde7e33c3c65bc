# The configurations an agenix user has, each with what the real module system must make of it
# (eval-nixos.nix). `expect` returns a list of mismatches, empty when the case holds; the same
# list is asserted by `cargo test` (tests/install/modules.rs, against the nixpkgs snapshots in
# ../shared/nix-trees) and by the flake's `checks` (against the flake's nixpkgs).
# Option values are pinned to what agenix's modules/age.nix gives for the same configuration.
{
  lib,
  # Where the test keeps things; the end-to-end tests pass real files and the built installer.
  files ? name: "/var/lib/ragenix-test/${name}.age",
  identity ? "/var/lib/ragenix-test/host_key",
  # Used by eval-nixos.nix, which sets age.ragenix.package to it.
  package ? null,
}:
let
  eq =
    what: got: want:
    lib.optional (got != want) "${what}: got ${builtins.toJSON got}, want ${builtins.toJSON want}";

  noFailures = r: eq "failed assertions" r.failedAssertions [ ] ++ eq "warnings" r.warnings [ ];

  # agenix's activation steps, in the order the real activation script runs them (other
  # snippets between them are left out).
  agenixOrder =
    r:
    eq "activation order"
      (lib.filter (
        n:
        lib.elem n [
          "specialfs"
          "agenixNewGeneration"
          "agenixInstall"
          "users"
          "groups"
          "agenixChown"
          "agenix"
        ]
      ) r.activation.order)
      [
        "specialfs"
        "agenixNewGeneration"
        "agenixInstall"
        "users"
        "groups"
        "agenixChown"
        "agenix"
      ];

  # Each step runs the installer with its phase on the manifest in the store.
  phases =
    r:
    let
      installer = lib.escapeRegex "${r.package}/bin/ragenix-install";
      runs =
        step: phase:
        lib.optional (
          builtins.match "${installer} --phase ${phase} /nix/store/[a-z0-9]{32}-ragenix-manifest\\.json\n?" r.activation.texts.${step} == null
        ) "${step}: ${builtins.toJSON r.activation.texts.${step}} does not run --phase ${phase}";
    in
    runs "agenixNewGeneration" "mount"
    ++ runs "agenixInstall" "install"
    ++ runs "agenixChown" "chown"
    ++ eq "agenix step" r.activation.texts.agenix "";

  secret =
    {
      name,
      path ? "/run/agenix/${name}",
      mode ? "0400",
      owner ? "0",
      group ? "0",
      symlink ? true,
      restartUnits ? [ ],
      reloadUnits ? [ ],
      file,
    }:
    {
      inherit
        name
        path
        mode
        owner
        group
        symlink
        restartUnits
        reloadUnits
        file
        ;
    };

  # No activation snippets: a oneshot ordered after the unit that creates users.
  asService =
    r:
    noFailures r
    ++ eq "activation steps" r.activation null
    ++ eq "service ordering"
      {
        inherit (r.service)
          after
          before
          wantedBy
          conflicts
          ;
      }
      {
        after = [
          "systemd-sysusers.service"
          "userborn.service"
        ];
        before = [
          "sysinit.target"
          "shutdown.target"
        ];
        wantedBy = [ "sysinit.target" ];
        conflicts = [ "shutdown.target" ];
      }
    ++ lib.optional (
      builtins.match ".*\nExecStart=${lib.escapeRegex "${r.package}/bin/ragenix-install"} /nix/store/[a-z0-9]{32}-ragenix-manifest\\.json\n.*" r.service.unitText == null
    ) "unit text runs no installer: ${r.service.unitText}";
in
{
  # Nothing but a secret and openssh: agenix's defaults, identities from the host keys.
  defaults = {
    configuration = {
      services.openssh.enable = true;
      age.secrets.db.file = files "db";
    };
    expect =
      r:
      noFailures r
      ++ agenixOrder r
      ++ phases r
      ++ eq "identityPaths" r.age.identityPaths [
        "/etc/ssh/ssh_host_rsa_key"
        "/etc/ssh/ssh_host_ed25519_key"
      ]
      ++ eq "secretsDir" r.age.secretsDir "/run/agenix"
      ++ eq "secretsMountPoint" r.age.secretsMountPoint "/run/agenix.d"
      ++ eq "secrets" r.age.secrets {
        db = secret {
          name = "db";
          file = files "db";
        };
      }
      ++ eq "service" r.service null;
  };

  # Everything a NixOS user combines, on the activation-script path.
  full = {
    configuration =
      { config, ... }:
      {
        age.identityPaths = [ identity ];
        users.users.alice = {
          isNormalUser = true;
          group = "users";
          hashedPasswordFile = config.age.secrets.alice-password.path;
        };
        users.users.app = {
          isSystemUser = true;
          group = "app";
        };
        users.groups.app = { };
        age.secrets = {
          alice-password.file = files "alice-password";
          for-alice = {
            file = files "for-alice";
            owner = "alice";
            mode = "0440";
          };
          linked = {
            file = files "linked";
            path = "/run/app/linked.conf";
            owner = "app";
            group = "users";
          };
          copied = {
            file = files "copied";
            path = "/run/app/copied.key";
            symlink = false;
            mode = "600";
            owner = "app";
          };
          nested = {
            file = files "nested";
            name = "app/nested/token";
            restartUnits = [ "app.service" ];
            reloadUnits = [ "nginx.service" ];
          };
        };
        age.templates."app.env" = {
          content = "DB=${config.age.placeholder.for-alice} TOKEN=${config.age.placeholder.nested}\n";
          owner = "app";
          mode = "0440";
          restartUnits = [ "app.service" ];
        };
      }
     ;
    expect =
      r:
      noFailures r
      ++ agenixOrder r
      ++ phases r
      ++ eq "identityPaths" r.age.identityPaths [ identity ]
      ++ eq "hashedPasswordFile" r.users.alice.hashedPasswordFile "/run/agenix/alice-password"
      ++ eq "secrets" r.age.secrets {
        alice-password = secret {
          name = "alice-password";
          file = files "alice-password";
        };
        for-alice = secret {
          name = "for-alice";
          file = files "for-alice";
          owner = "alice";
          group = "users";
          mode = "0440";
        };
        linked = secret {
          name = "linked";
          file = files "linked";
          path = "/run/app/linked.conf";
          owner = "app";
          group = "users";
        };
        copied = secret {
          name = "copied";
          file = files "copied";
          path = "/run/app/copied.key";
          symlink = false;
          mode = "600";
          owner = "app";
          group = "app";
        };
        nested = secret {
          name = "app/nested/token";
          path = "/run/agenix/app/nested/token";
          file = files "nested";
          restartUnits = [ "app.service" ];
          reloadUnits = [ "nginx.service" ];
        };
      }
      ++ eq "templates" r.age.templates {
        "app.env" = {
          name = "app.env";
          path = "/run/agenix/templates/app.env";
          content = "DB=<RAGENIX:PLACEHOLDER:for-alice> TOKEN=<RAGENIX:PLACEHOLDER:app/nested/token>\n";
          mode = "0440";
          owner = "app";
          group = "app";
          symlink = true;
          restartUnits = [ "app.service" ];
          reloadUnits = [ ];
        };
      }
      ++ eq "service" r.service null;
  };

  # agenix's old option name still works (through the module system's rename, with a warning).
  sshKeyPaths = {
    configuration = {
      age.sshKeyPaths = [ identity ];
      age.secrets.db.file = files "db";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ eq "identityPaths" r.age.identityPaths [ identity ]
      ++ eq "warnings" (map (
        w: builtins.match "The option `age.sshKeyPaths' defined in `[^']*' has been renamed to `age.identityPaths'." w != null
      ) r.warnings) [ true ];
  };

  # Users from systemd-sysusers: no activation snippets, a oneshot ordered after it.
  sysusers = {
    configuration = {
      systemd.sysusers.enable = true;
      users.mutableUsers = false;
      system.etc.overlay.enable = true;
      system.etc.overlay.mutable = false;
      users.allowNoPasswordLogin = true;
      boot.initrd.systemd.enable = true;
      users.users.app = {
        isSystemUser = true;
        group = "app";
      };
      users.groups.app = { };
      age.identityPaths = [ identity ];
      age.secrets.db = {
        file = files "db";
        owner = "app";
        restartUnits = [ "recorder.service" ];
      };
      age.secrets.other.file = files "other";
    };
    expect = asService;
  };

  # Users from userborn (NixOS 24.11 and later): the same service.
  userborn = {
    configuration = {
      services.userborn.enable = true;
      age.identityPaths = [ identity ];
      age.secrets.db.file = files "db";
    };
    expect = asService;
  };
}
