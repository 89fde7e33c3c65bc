# Evaluates each case of darwin-cases.nix with darwin-module.nix inside nix-darwin's own module
# system (`eval-config.nix`), for an aarch64-darwin host whose nixpkgs is `nixpkgs` (the flake's
# input, or a tree with the stand-in pkgs.nix as its default.nix); returns, per case, `result`
# and `failures` like eval-nixos.nix.
{
  nixDarwin,
  nixpkgs,
  lib ? import (nixpkgs + "/lib"),
  module ? ../../darwin-module.nix,
  system ? "aarch64-darwin",
  params ? { },
  only ? null,
  cases ? null,
}:
let
  all = if cases != null then cases else import ./darwin-cases.nix ({ inherit lib; } // params);

  machine = {
    nixpkgs.source = nixpkgs;
    nixpkgs.hostPlatform = system;
    system.stateVersion = 6;
  };

  package = lib.optionalAttrs (params.package or null != null) {
    age.ragenix.package = params.package;
  };

  evaluate =
    configuration:
    let
      c =
        (import (nixDarwin + "/eval-config.nix") {
          inherit lib;
          modules = [
            module
            machine
            package
            configuration
          ];
        }).config;
      entry =
        e:
        removeAttrs e [
          "_module"
          "file"
          "content"
        ]
        // lib.optionalAttrs (e ? file) { file = toString e.file; }
        // lib.optionalAttrs (e ? content) { inherit (e) content; };
      daemon = c.launchd.daemons.activate-agenix or null;
      label = daemon.serviceConfig.Label or "";
    in
    {
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
      inherit (c) warnings;
      package = toString c.age.ragenix.package;
      packageSystem = c.age.ragenix.package.system or null;
      manifest = {
        path = toString c.age.ragenix.manifest;
        inherit (c.age.ragenix.manifest) checkPhase;
        json = builtins.fromJSON (builtins.readFile c.age.ragenix.manifest);
      };
      age = {
        identityPaths = map toString c.age.identityPaths;
        inherit (c.age) secretsDir secretsMountPoint placeholder;
        secrets = lib.mapAttrs (_: entry) c.age.secrets;
        templates = lib.mapAttrs (_: entry) c.age.templates;
      };
      daemon =
        if daemon == null then
          null
        else
          lib.filterAttrs (_: v: v != null) daemon.serviceConfig
          // {
            plist = c.environment.launchDaemons ? "${label}.plist";
          };
      # Our installer runs and nix-darwin's user creation, in the order of the activation script.
      activation = lib.filter (l: lib.hasInfix "ragenix-install" l || l == "echo \"setting up users...\" >&2") (
        lib.splitString "\n" c.system.activationScripts.script.text
      );
    };

  selected = if only == null then all else lib.getAttrs only all;
in
lib.mapAttrs (
  _: case:
  let
    result = evaluate case.configuration;
  in
  {
    inherit result;
    failures = case.expect result;
  }
) selected
