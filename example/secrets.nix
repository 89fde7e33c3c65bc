# An agenix rules file: which public keys may decrypt each secret.
# EXAMPLE ONLY: the keys below belong to the published example keys in ./keys.
let
  alice = "age1pmkjuyfltcdrtvsgmer0qht8e5ta0daq32jfnjmq6wqsqrgjksrsalc48w";
  host = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII3GSNuEVZIXoAfRLmMBdMzIhK9WHRTD3q07WlHGVq0I";
  everyone = [ alice host ];
in
{
  "hello.age".publicKeys = everyone;
  "db-password.age" = {
    publicKeys = [ alice host ];
    armor = true;
  };
  "services/api-token.json.age".publicKeys = [ alice ];
}
