# A minimal stand-in for impermanence's NixOS module (github:nix-community/impermanence): its
# `environment.persistence` option with the shape the real one has after merging
# (`persistentStoragePath`, `files` and `directories` as strings or `{ file }` / `{ directory }`,
# per-user entries relative to the home), and none of its mounts. Only what
# nix/impermanence.nix reads.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  entries =
    key:
    mkOption {
      type = types.listOf (
        types.coercedTo types.str (v: { ${key} = v; }) (
          types.submodule { options.${key} = mkOption { type = types.str; }; }
        )
      );
      default = [ ];
    };
in
{
  options.environment.persistence = mkOption {
    type = types.attrsOf (
      types.submodule (
        { name, ... }:
        {
          options = {
            enable = mkOption {
              type = types.bool;
              default = true;
            };
            persistentStoragePath = mkOption {
              type = types.str;
              default = name;
            };
            files = entries "file";
            directories = entries "directory";
            users = mkOption {
              type = types.attrsOf (
                types.submodule {
                  options = {
                    home = mkOption {
                      type = types.nullOr types.str;
                      default = null;
                    };
                    files = entries "file";
                    directories = entries "directory";
                  };
                }
              );
              default = { };
            };
          };
        }
      )
    );
    default = { };
  };
}
