# Path values: copied to the store by Nix in JSON output and string interpolation.
{
  "p.age" = {
    publicKeys = [ (builtins.readFile ./key.pub) ];
    file = ./key.pub;
    dir = ./sub;
    interpolated = "${./key.pub}";
    plus = "prefix-" + ./sub/b.txt;
    str = toString ./key.pub;
    joined = ./sub + "/a.txt";
    base = baseNameOf ./sub/a.txt;
    dirof = toString (dirOf ./sub/a.txt);
    sep = builtins.concatStringsSep "," [ ./key.pub "x" ];
  };
}
