{
  description = "ragenix: agenix-compatible age secrets for NixOS, in Rust";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        ragenix = pkgs.callPackage ./package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.ragenix;
      });

      overlays.default = final: _prev: { ragenix = final.callPackage ./package.nix { }; };

      nixosModules = {
        ragenix = ./module.nix;
        age = self.nixosModules.ragenix;
        default = self.nixosModules.ragenix;
      };

      homeManagerModules = {
        ragenix = ./hm-module.nix;
        age = self.homeManagerModules.ragenix;
        default = self.homeManagerModules.ragenix;
      };

      apps = forAllSystems (
        pkgs:
        let
          ragenix = self.packages.${pkgs.stdenv.hostPlatform.system}.ragenix;
        in
        {
          ragenix = {
            type = "app";
            program = "${ragenix}/bin/ragenix";
          };
          default = self.apps.${pkgs.stdenv.hostPlatform.system}.ragenix;
        }
      );

      checks = forAllSystems (
        pkgs:
        {
          # The package build runs `cargo test`.
          ragenix = self.packages.${pkgs.stdenv.hostPlatform.system}.ragenix;
        }
        // lib.optionalAttrs pkgs.stdenv.isLinux {
          vm = import ./nix/tests/vm.nix {
            inherit pkgs;
            module = self.nixosModules.default;
          };
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.ragenix ];
          packages = [
            pkgs.age
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
          ];
        };
      });
    };
}
