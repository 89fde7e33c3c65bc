# The manifest both modules hand to `ragenix-install`, as a store file whose build runs
# `ragenix-install --check` on it: the installer is the only validator of option values
# (modes, names, paths, units, placeholders, and the `.age` files unless checkFiles is off).
{
  pkgs,
  lib,
  cfg,
  # "system" or "home"; see nix/manifest.nix.
  kind,
  # "linux" or "darwin".
  platform ? "linux",
  # Extra manifest fields (restart list files).
  extra ? { },
}:
let
  installer = "${cfg.ragenix.package}/bin/ragenix-install";
in
pkgs.writeTextFile {
  name = if kind == "system" then "ragenix-manifest.json" else "ragenix-home-manifest.json";
  text = builtins.toJSON (
    import ./manifest.nix (
      {
        inherit (cfg)
          secrets
          templates
          identityPaths
          secretsDir
          secretsMountPoint
          ;
        mode = kind;
        inherit platform;
        keepGenerations = cfg.ragenix.keepGenerations;
        pluginPaths = map (p: "${p}/bin") cfg.plugins;
      }
      // lib.optionalAttrs (kind == "system") { dirGroup = if platform == "darwin" then "admin" else "keys"; }
      // extra
    )
  );
  checkPhase = ''
    ${installer} --check ${lib.optionalString (!cfg.ragenix.checkFiles) "--skip-files"} "$target"
  '';
}
