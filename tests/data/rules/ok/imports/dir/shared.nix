{ users }: { keys = [ users.alice users.bob (import ../keys/users.nix).alice ]; }
