let
  keys = [ "k1" "k2" "k3" ];
  b = builtins;
in
{
  "l.age" = {
    publicKeys = keys ++ [ "k4" ];
    m = map (k: k + "!") keys;
    f = b.filter (k: k != "k2") keys;
    c = b.concatLists [ [ 1 ] [ 2 3 ] [ ] ];
    cm = b.concatMap (x: [ x x ]) [ 1 2 ];
    l = b.length keys;
    h = b.head keys;
    t = b.tail keys;
    e = b.elemAt keys 2;
    el = [ (b.elem "k1" keys) (b.elem "zz" keys) ];
    any = b.any (x: x == "k3") keys;
    all = b.all (x: b.stringLength x == 2) keys;
    fold = b.foldl' (acc: x: acc + x) 0 [ 1 2 3 4 ];
    gen = b.genList (i: i * i) 5;
    sorted = b.sort (a: b: a < b) [ 3 1 2 1 ];
    part = b.partition (x: x > 1) [ 1 2 3 ];
    grp = b.groupBy (x: if x > 1 then "big" else "small") [ 1 2 3 ];
    types = map b.typeOf [ 1 1.0 "s" null true [ ] { } (x: x) ./. ];
    is = [ (b.isList [ ]) (b.isString "") (b.isAttrs { }) (b.isInt 1) (b.isFloat 1.0) (b.isBool false) (b.isNull null) (b.isFunction b.map) (b.isPath ./.) ];
    cat = b.catAttrs "a" [ { a = 1; } { b = 2; } { a = 3; } ];
  };
}
