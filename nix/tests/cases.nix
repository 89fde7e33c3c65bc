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

  # The module system does not promise an order for list definitions merged from many places.
  sort = lib.sort lib.lessThan;

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
      credentials ? [ ],
      credentialName ? lib.replaceStrings [ "/" ] [ "_" ] name,
      format ? "binary",
      key ? null,
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
        credentials
        credentialName
        format
        key
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

  # What NixOS needs for users from systemd-sysusers.
  sysusersBase = {
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
  };
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
          credentials = [ ];
          credentialName = "app.env";
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

  # Users from systemd-sysusers: no activation snippets, a oneshot ordered after it and after
  # the identities' mounts. `reader` (a DynamicUser= service under real systemd in
  # tests/install/modules.rs) reads `other` as a credential.
  sysusers = {
    configuration = sysusersBase // {
      age.identityPaths = [ identity ];
      age.secrets.db = {
        file = files "db";
        owner = "app";
        restartUnits = [ "recorder.service" ];
      };
      age.secrets.other = {
        file = files "other";
        credentials = [ "reader.service" ];
      };
    };
    expect =
      r:
      asService r
      ++ eq "RequiresMountsFor" r.service.requiresMountsFor [ (builtins.toJSON identity) ]
      ++ eq "credential units" (lib.mapAttrs (_: u: removeAttrs u [ "unitText" ]) r.credentialUnits) {
        reader = {
          loadCredential = [ "other:/run/agenix/other" ];
          after = [ "agenix-install-secrets.service" ];
          wants = [ "agenix-install-secrets.service" ];
        };
      }
      ++ eq "restart units" r.manifest.restartUnits {
        secrets = {
          db = [ "recorder.service" ];
          other = [ "reader.service" ];
        };
        templates = { };
      };
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

  # One line per secret hands it to a service, DynamicUser= ones included: LoadCredential=
  # with the credential name (default: `name` with `/` as `_`), and the service restarted when
  # the secret changes. The secret itself stays root's, 0400.
  credentials = {
    configuration =
      { config, ... }:
      {
        age.identityPaths = [ identity ];
        systemd.services.app.serviceConfig = {
          DynamicUser = true;
          ExecStart = "/bin/sh -c 'cat $CREDENTIALS_DIRECTORY/token'";
        };
        systemd.services.worker.serviceConfig.ExecStart = "/bin/true";
        age.secrets = {
          token = {
            file = files "token";
            credentials = [
              "app.service"
              "worker.service"
            ];
            restartUnits = [
              "worker.service"
              "other.service"
            ];
          };
          nested = {
            file = files "nested";
            name = "api/key";
            credentials = [ "app.service" ];
          };
          # `%` is a specifier in unit files: both halves are escaped.
          odd = {
            file = files "odd";
            credentialName = "50%off";
            path = "/run/app/50%off";
            credentials = [ "worker.service" ];
          };
        };
        age.templates."app.env" = {
          content = "TOKEN=${config.age.placeholder.token}\n";
          credentials = [ "app.service" ];
        };
      };
    expect =
      r:
      noFailures r
      ++ agenixOrder r
      ++ eq "credential units" (lib.mapAttrs (_: u: sort u.loadCredential) r.credentialUnits) {
        app = [
          "api_key:/run/agenix/api/key"
          "app.env:/run/agenix/templates/app.env"
          "token:/run/agenix/token"
        ];
        worker = [
          "50%%off:/run/app/50%%off"
          "token:/run/agenix/token"
        ];
      }
      ++ eq "app unit's credential lines"
        (sort (
          lib.filter (l: lib.hasPrefix "LoadCredential=" l || lib.hasPrefix "DynamicUser=" l) (
            lib.splitString "\n" r.credentialUnits.app.unitText
          )
        ))
        [
          "DynamicUser=true"
          "LoadCredential=api_key:/run/agenix/api/key"
          "LoadCredential=app.env:/run/agenix/templates/app.env"
          "LoadCredential=token:/run/agenix/token"
        ]
      ++ eq "ordering in the activation variant" (map (u: u.after) (lib.attrValues r.credentialUnits)) [
        [ ]
        [ ]
      ]
      ++ eq "restart units" r.manifest.restartUnits {
        secrets = {
          token = [
            "worker.service"
            "other.service"
            "app.service"
          ];
          "api/key" = [ "app.service" ];
          odd = [ "worker.service" ];
        };
        templates."app.env" = [ "app.service" ];
      }
      ++ eq "token" r.age.secrets.token (secret {
        name = "token";
        file = files "token";
        credentials = [
          "app.service"
          "worker.service"
        ];
        restartUnits = [
          "worker.service"
          "other.service"
        ];
      });
  };

  # Many values in one file: JSON, YAML and dotenv documents, several secrets from each (run
  # end to end by tests/install/modules.rs, where the key `db/nope` is missing).
  structured = {
    configuration =
      { config, ... }:
      {
        age.identityPaths = [ identity ];
        age.secrets = {
          gh-token = {
            file = files "app.json";
            format = "json";
            key = "github/oauth_token";
          };
          gh-user = {
            file = files "app.json";
            format = "json";
            key = "github/user";
          };
          db-password = {
            file = files "db.yaml";
            format = "yaml";
            key = "db/password";
          };
          smtp = {
            file = files "db.yaml";
            format = "yaml";
            key = "smtp";
          };
          api-token = {
            file = files "app.env";
            format = "dotenv";
            key = "API_TOKEN";
          };
          signing-key = {
            file = files "app.env";
            format = "dotenv";
            key = "SIGNING_KEY";
          };
          missing = {
            file = files "db.yaml";
            format = "yaml";
            key = "db/nope";
          };
        };
        age.templates."app.conf".content = "token=${config.age.placeholder.gh-token} db=${config.age.placeholder.db-password}\n";
      };
    expect =
      r:
      noFailures r
      ++ agenixOrder r
      ++ eq "gh-token" r.age.secrets.gh-token (secret {
        name = "gh-token";
        file = files "app.json";
        format = "json";
        key = "github/oauth_token";
      });
  };

  # Credential names systemd would refuse, units that are not services, and one name given
  # twice to a unit: each an assertion naming the option.
  badCredentials = {
    configuration = {
      age.identityPaths = [ identity ];
      age.secrets = {
        colon = {
          file = files "colon";
          credentialName = "a:b";
          credentials = [ "app.service" ];
        };
        dots = {
          file = files "dots";
          credentialName = "..";
          credentials = [ "app.service" ];
        };
        socket = {
          file = files "socket";
          credentials = [ "app.socket" ];
        };
        token = {
          file = files "token";
          credentials = [ "app.service" ];
        };
      };
      age.templates.token = {
        content = "x";
        credentials = [ "app.service" ];
      };
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [
        ''age.secrets."colon".credentialName: "a:b" is not a valid systemd credential name (printable ASCII without `/` and `:`, not starting with a space, at most 255 characters, not `.` or `..`); set age.secrets."colon".credentialName.''
        ''age.secrets."dots".credentialName: ".." is not a valid systemd credential name (printable ASCII without `/` and `:`, not starting with a space, at most 255 characters, not `.` or `..`); set age.secrets."dots".credentialName.''
        ''age.secrets."socket".credentials: "app.socket" is not a service (`<name>.service`); LoadCredential= is only set on services.''
        ''age.secrets."token" and age.templates."token" give the same credential name "token" to app.service; set a different credentialName on one of them.''
      ];
  };

  # impermanence: the host key on a /persist that stage 1 does not mount is not there at
  # activation. The assertion names the option to set.
  persistNotNeededForBoot = {
    configuration = {
      fileSystems."/persist" = {
        device = "/dev/vda2";
        fsType = "ext4";
      };
      age.identityPaths = [ "/persist/etc/ssh/ssh_host_ed25519_key" ];
      age.secrets.db.file = files "db";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [
        ''age.identityPaths: /persist/etc/ssh/ssh_host_ed25519_key is on "/persist" (fileSystems."/persist"), which is not mounted yet when secrets are installed at activation; set fileSystems."/persist".neededForBoot = true.''
      ];
  };

  # The same with neededForBoot (and a deeper mount elsewhere that does not contain the key).
  persistNeededForBoot = {
    configuration = {
      fileSystems."/persist" = {
        device = "/dev/vda2";
        fsType = "ext4";
        neededForBoot = true;
      };
      fileSystems."/persist/etc/other" = {
        device = "/dev/vda3";
        fsType = "ext4";
      };
      age.identityPaths = [ "/persist/etc/ssh/ssh_host_ed25519_key" ];
      age.secrets.db.file = files "db";
    };
    expect = noFailures;
  };

  # The host keys where impermanence bind-mounts them (a file, and a directory), with openssh's
  # default paths: not there at activation; the assertion gives the /persist path to use.
  persistBindMounts = {
    configuration = {
      imports = [ ./impermanence.nix ];
      services.openssh.enable = true;
      fileSystems."/persist" = {
        device = "/dev/vda2";
        fsType = "ext4";
      };
      environment.persistence."/persist" = {
        files = [ "/etc/ssh/ssh_host_rsa_key" ];
        directories = [ { directory = "/etc/ssh/"; } ];
      };
      age.secrets.db.file = files "db";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [
        ''age.identityPaths: /etc/ssh/ssh_host_rsa_key is bind-mounted from environment.persistence."/persist" only after activation, so the installer would find no identity there; list "/persist/etc/ssh/ssh_host_rsa_key" in age.identityPaths instead and set fileSystems."/persist".neededForBoot = true.''
        ''age.identityPaths: /etc/ssh/ssh_host_ed25519_key is bind-mounted from environment.persistence."/persist" only after activation, so the installer would find no identity there; list "/persist/etc/ssh/ssh_host_ed25519_key" in age.identityPaths instead and set fileSystems."/persist".neededForBoot = true.''
      ];
  };

  # What that assertion asks for: no assertion.
  persistFixed = {
    configuration = {
      imports = [ ./impermanence.nix ];
      services.openssh.enable = true;
      fileSystems."/persist" = {
        device = "/dev/vda2";
        fsType = "ext4";
        neededForBoot = true;
      };
      environment.persistence."/persist".directories = [ "/etc/ssh" ];
      age.identityPaths = [ "/persist/etc/ssh/ssh_host_ed25519_key" ];
      age.secrets.db.file = files "db";
    };
    expect = noFailures;
  };

  # In the service variant the unit waits for the mount (RequiresMountsFor=), so /persist need
  # not be mounted by stage 1.
  persistService = {
    configuration = sysusersBase // {
      fileSystems."/persist" = {
        device = "/dev/vda2";
        fsType = "ext4";
      };
      age.identityPaths = [
        "/persist/etc/ssh/ssh_host_ed25519_key"
        "/persist/keys/with space/50%\"q\\"
      ];
      age.secrets.db.file = files "db";
    };
    expect =
      r:
      noFailures r
      ++ eq "RequiresMountsFor" r.service.requiresMountsFor [
        ''"/persist/etc/ssh/ssh_host_ed25519_key"''
        ''"/persist/keys/with space/50%%\"q\\"''
      ];
  };
}
