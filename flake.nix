{
  description = "ragenix: agenix-compatible age secrets for NixOS, in Rust";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  # Only for `checks` (the home-manager module evaluated in home-manager's module system).
  inputs.home-manager = {
    url = "github:nix-community/home-manager";
    inputs.nixpkgs.follows = "nixpkgs";
  };
  # Only for `checks` (the nix-darwin module evaluated in nix-darwin's module system).
  inputs.nix-darwin = {
    url = "github:nix-darwin/nix-darwin";
    inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    {
      self,
      nixpkgs,
      home-manager,
      nix-darwin,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # One check per case of nix/tests/{cases,home-cases}.nix on Linux and of
      # nix/tests/{darwin-cases,home-darwin-cases}.nix on macOS: the same evaluations and
      # assertions `cargo test` runs against the nix-trees snapshots, here against this flake's
      # nixpkgs, home-manager and nix-darwin. Evaluation does the work; the build only reports.
      evalChecks =
        pkgs:
        let
          report =
            kind: cases:
            lib.mapAttrs' (
              name: case:
              lib.nameValuePair "${kind}-${name}" (
                pkgs.runCommand "ragenix-${kind}-${name}" { failures = builtins.toJSON case.failures; } ''
                  if [ "$failures" != "[]" ]; then
                    echo "$failures" >&2
                    exit 1
                  fi
                  touch $out
                ''
              )
            ) cases;
        in
        if pkgs.stdenv.isDarwin then
          report "darwin" (
            import ./nix/tests/eval-darwin.nix {
              nixDarwin = nix-darwin.outPath;
              nixpkgs = nixpkgs.outPath;
              inherit (pkgs.stdenv.hostPlatform) system;
            }
          )
          // report "home-darwin" (
            import ./nix/tests/eval-home.nix {
              homeManager = home-manager.outPath;
              inherit pkgs;
              cases = import ./nix/tests/home-darwin-cases.nix { inherit lib; };
            }
          )
        else
          report "nixos" (
            import ./nix/tests/eval-nixos.nix {
              nixpkgs = nixpkgs.outPath;
              inherit (pkgs.stdenv.hostPlatform) system;
            }
          )
          // report "home" (
            import ./nix/tests/eval-home.nix {
              homeManager = home-manager.outPath;
              inherit pkgs;
            }
          );
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

      darwinModules = {
        ragenix = ./darwin-module.nix;
        age = self.darwinModules.ragenix;
        default = self.darwinModules.ragenix;
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
        // evalChecks pkgs
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt);

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
