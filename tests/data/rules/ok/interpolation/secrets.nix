let
  name = "host";
  n = 3;
  f = 2.5;
  set = { __toString = self: "custom"; };
  drv = { outPath = "/some/out"; };
in
{
  "s.age" = {
    publicKeys = [ "${name}-key" "${toString n}" ];
    a = "plain ${name} ${"nested ${name}"}";
    b = ''
      indented
        more ${name}
      last''${name} ''' $${x}
    '';
    c = toString [ 1 "a" null true false [ 2 3 ] [] 4 ];
    d = toString f;
    e = "${set} ${drv}";
    g = "esc \n \t \" \\ \${not}";
    h = ''  single line  '';
    i = toString 1.0;
    j = "${toString (-5)}";
  };
}
