let
  hosts = { web = "kw"; db = "kd"; mail = "km"; };
  b = builtins;
in
b.listToAttrs (map (n: { name = "${n}.age"; value = { publicKeys = [ hosts.${n} ]; }; }) (b.attrNames hosts))
// {
  "meta.age" = {
    publicKeys = b.attrValues hosts;
    has = [ (b.hasAttr "web" hosts) (hosts ? db) (hosts ? nope.deeper) (b.getAttr "db" hosts) ];
    mapped = b.mapAttrs (n: v: n + "=" + v) hosts;
    removed = b.removeAttrs hosts [ "web" "zzz" ];
    inter = b.intersectAttrs { web = 0; } hosts;
    zipped = b.zipAttrsWith (n: vs: vs) [ { a = 1; } { a = 2; b = 3; } ];
    dupFirst = b.listToAttrs [ { name = "x"; value = 1; } { name = "x"; value = 2; } ];
    sel = hosts.nope or "default";
    sel2 = (1).x or "non-set default";
    fa = b.functionArgs ({ a, b ? 1 }: a);
  };
}
