# `age.secrets` and `age.templates`, declared once for the NixOS module (`kind = "system"`) and
# the home-manager module (`kind = "home"`). They differ only where the platforms do: a system
# entry has an owner and a group (default: the owner's primary group, as agenix); a home entry
# belongs to the user and its paths may hold `$VAR` and `~`, expanded by the installer.
# Values are checked by `ragenix-install --check` on the manifest at build time, not here, so
# that Nix and the installer cannot disagree on what is valid.
{
  lib,
  cfg,
  kind,
  # config.users.users (system only), for the default group.
  users ? { },
  # NixOS only: `credentials` / `credentialName` for systemd's LoadCredential= (nix-darwin has
  # no systemd, home-manager's user units are left out).
  credentials ? false,
}:
let
  inherit (lib) literalExpression mkOption types;

  isSystem = kind == "system";
  expanded = lib.optionalString (!isSystem) " `$VAR`, `\${VAR}` and a leading `~` are expanded when it runs.";

  common =
    config:
    {
      mode = mkOption {
        type = types.str;
        default = "0400";
        description = "Permissions of the decrypted file, as an octal mode (`\"0440\"`).";
      };
      symlink = lib.mkEnableOption "symlinking the file from `path` into secretsDir" // {
        default = true;
      };
      restartUnits = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "nginx.service" ];
        description =
          if isSystem then
            "Units restarted (`systemctl try-restart`) when this file changes."
          else
            "User units restarted when this file changes.";
      };
      reloadUnits = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "nginx.service" ];
        description =
          if isSystem then
            "Units reloaded (`systemctl try-reload-or-restart`) when this file changes."
          else
            "User units reloaded when this file changes.";
      };
    }
    // lib.optionalAttrs credentials {
      credentials = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "nginx.service" ];
        description = ''
          Services that receive this file as the systemd credential `credentialName`
          (`LoadCredential=`), readable by the service, `DynamicUser=` ones included, at
          `$CREDENTIALS_DIRECTORY/<credentialName>` (`%d/<credentialName>` in the unit). They are
          restarted when the file changes, like `restartUnits`.
        '';
      };
      credentialName = mkOption {
        type = types.str;
        default = lib.replaceStrings [ "/" ] [ "_" ] config.name;
        defaultText = literalExpression ''lib.replaceStrings [ "/" ] [ "_" ] name'';
        description = ''
          Name of the credential in the units of `credentials`: printable ASCII without `/` and
          `:`, at most 255 characters, not `.` or `..` (systemd's rules).
        '';
      };
    }
    // lib.optionalAttrs isSystem {
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
    };

  entry =
    {
      what,
      subdir,
      source,
    }:
    types.submodule (
      { config, name, ... }:
      {
        options = {
          name = mkOption {
            type = types.str;
            default = name;
            description = "Name of the file in `\${age.secretsDir}${subdir}`.";
          };
          path = mkOption {
            type = types.str;
            default = "${cfg.secretsDir}${subdir}/${config.name}";
            defaultText = literalExpression ''"''${config.age.secretsDir}${subdir}/''${name}"'';
            description = "Where the ${what} is installed.${expanded}";
          };
        }
        // source
        // common config;
      }
    );
in
{
  secrets = mkOption {
    type = types.attrsOf (entry {
      what = "decrypted secret";
      subdir = "";
      source = {
        file = mkOption {
          type = types.path;
          description = "Age file the secret is decrypted from.";
        };
        format = mkOption {
          type = types.str;
          default = "binary";
          example = "yaml";
          description = ''
            How the decrypted file is read: `"binary"` (the whole file is the secret) or
            `"json"`, `"yaml"`, `"dotenv"`, `"ini"`: a document whose value at `key` is the
            secret. Several secrets may name the same file; it is decrypted once.
          '';
        };
        key = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "github/oauth_token";
          description = ''
            Path of the value in the document, `/`-separated (a list index is a number; for
            dotenv the variable name; for INI `section/name`). Required unless `format` is
            `"binary"`.
          '';
        };
      };
    });
    default = { };
    description = "Attrset of secrets.";
  };
  templates = mkOption {
    type = types.attrsOf (entry {
      what = "rendered file";
      subdir = "/templates";
      source.content = mkOption {
        type = types.lines;
        example = literalExpression ''"password=''${config.age.placeholder.db-password}"'';
        description = "Text of the file; `config.age.placeholder.<secret>` marks where a secret goes.";
      };
    });
    default = { };
    description = "Files rendered from text with secrets substituted for placeholders.";
  };
}
