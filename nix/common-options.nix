# Options the NixOS and home-manager modules declare alike: placeholders, plugins and the
# installer's own settings. Each module merges these into its `options.age`.
{
  lib,
  pkgs,
  cfg,
}:
let
  inherit (lib) literalExpression mapAttrs mkOption types;
  placeholder = import ./placeholder.nix;
in
{
  placeholder = mkOption {
    type = types.attrsOf types.str;
    readOnly = true;
    default = mapAttrs (_: s: placeholder s.name) cfg.secrets;
    defaultText = literalExpression ''{ <secret> = "<RAGENIX:PLACEHOLDER:<name>>"; }'';
    description = "For each secret, the string that a template's content uses in its place.";
  };
  plugins = mkOption {
    type = types.listOf types.package;
    default = [ ];
    example = literalExpression "[ pkgs.age-plugin-yubikey ]";
    description = "Packages whose `bin/age-plugin-*` programs the installer may call.";
  };
  ragenix = {
    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../package.nix { };
      defaultText = literalExpression "pkgs.callPackage \"\${ragenix}/package.nix\" { }";
      description = "The ragenix package providing `ragenix-install`.";
    };
    keepGenerations = mkOption {
      type = types.ints.positive;
      default = 1;
      description = "How many generations of secrets to keep, the current one included.";
    };
    manifest = mkOption {
      type = types.package;
      internal = true;
      readOnly = true;
      description = ''
        The manifest file the installer runs on (set by the module); its build runs
        `ragenix-install --check`. For inspection and tests.
      '';
    };
    checkFiles = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Check at build time that every `file` exists and starts with an age header. Turn off
        when secrets are given as strings naming files outside the Nix store.
      '';
    };
  };
}
