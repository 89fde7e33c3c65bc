# Evaluates each case of cases.nix with module.nix inside the real NixOS module system
# (`nixos/lib/eval-config.nix` of `nixpkgs`) and returns, per case, what the configuration
# turned into (`result`) and the case's mismatches (`failures`, empty when it holds).
# `nixpkgs` is a nixpkgs tree: the flake's input, or a snapshot with the stand-in pkgs.nix as
# its default.nix (tests/install/modules.rs).
{
  nixpkgs,
  module ? ../../module.nix,
  system ? "x86_64-linux",
  # Passed to cases.nix: files, identity, package.
  params ? { },
  # Only these cases (null: all).
  only ? null,
  # Cases of the caller's own instead of cases.nix's.
  cases ? null,
}:
let
  lib = import (nixpkgs + "/lib");
  all = if cases != null then cases else import ./cases.nix ({ inherit lib; } // params);

  # Newer NixOS creates users with userborn; a tree from before it existed gets the option
  # declared as NixOS declares it, so the module's reaction to it can still be tested.
  userbornOption = lib.optional (!builtins.pathExists (nixpkgs + "/nixos/modules/services/system/userborn.nix")) {
    options.services.userborn.enable = lib.mkEnableOption "userborn";
  };

  machine = {
    boot.loader.grub.enable = false;
    fileSystems."/".device = "/dev/vda1";
    system.stateVersion = "24.05";
  };

  evaluate =
    configuration:
    let
      c =
        (import (nixpkgs + "/nixos/lib/eval-config.nix") {
          inherit system;
          modules = [
            module
            machine
            package
            configuration
          ] ++ userbornOption;
        }).config;
      scripts = c.system.activationScripts;
      entry =
        e:
        removeAttrs e [
          "_module"
          "file"
          "content"
        ]
        // lib.optionalAttrs (e ? file) { file = toString e.file; }
        // lib.optionalAttrs (e ? content) { inherit (e) content; };
      service = c.systemd.services.agenix-install-secrets or null;
    in
    {
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
      inherit (c) warnings;
      package = toString c.age.ragenix.package;
      # The file the installer runs on, and the build-time check its build runs.
      manifest =
        let
          json = builtins.fromJSON (builtins.readFile c.age.ragenix.manifest);
          units = l: builtins.listToAttrs (map (e: lib.nameValuePair e.name e.restartUnits) l);
        in
        {
          path = toString c.age.ragenix.manifest;
          inherit (c.age.ragenix.manifest) checkPhase;
          # What the installer restarts per secret and template when it changes.
          restartUnits = {
            secrets = units json.secrets;
            templates = units json.templates;
          };
        };
      # The services handed a secret as a credential, and what NixOS wrote for them.
      credentialUnits = lib.mapAttrs (n: s: {
        inherit (s) after wants;
        loadCredential = s.serviceConfig.LoadCredential;
        unitText = c.systemd.units."${n}.service".text;
      }) (lib.filterAttrs (_: s: s.serviceConfig.LoadCredential or [ ] != [ ]) c.systemd.services);
      age = {
        identityPaths = map toString c.age.identityPaths;
        secretsDir = toString c.age.secretsDir;
        inherit (c.age) secretsMountPoint placeholder;
        secrets = lib.mapAttrs (_: entry) c.age.secrets;
        templates = lib.mapAttrs (_: entry) c.age.templates;
      };
      users = lib.mapAttrs (_: u: { inherit (u) hashedPasswordFile group; }) c.users.users;
      activation =
        if scripts ? agenixInstall then
          {
            script = scripts.script;
            # Snippet names in the order the generated script runs them.
            order = map builtins.head (
              lib.filter builtins.isList (builtins.split "#### Activation script snippet ([^:]+):" scripts.script)
            );
            texts = lib.genAttrs [
              "agenixNewGeneration"
              "agenixInstall"
              "agenixChown"
              "agenix"
            ] (n: scripts.${n}.text);
          }
        else
          null;
      service =
        if service == null || !service.enable then
          null
        else
          {
            inherit (service)
              after
              before
              wantedBy
              conflicts
              ;
            unitText = c.systemd.units."agenix-install-secrets.service".text;
            requiresMountsFor = service.unitConfig.RequiresMountsFor or null;
          };
    };

  # The installer under test, when the caller has one.
  package = lib.optionalAttrs (params.package or null != null) {
    age.ragenix.package = params.package;
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
