# gnuplot docs/study/study-cifar10.gp  (made by quantlab study; reads study-cifar10.csv)
set datafile separator ','
set logscale x 2
set grid
set key outside right
set xlabel 'model size (KiB, log scale)'
set ylabel 'test accuracy (%)'
set title 'Post-training quantization on cifar10'
set terminal png size 900,560
set output 'study-cifar10.png'
plot 'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'custom' ? 100*$4 : NaN) with points pt 5 ps 1.5 title 'custom', \
     '' using ($3/1024):(strcol(1) eq 'custom' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle, \
     'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'resnet_v1' ? 100*$4 : NaN) with points pt 6 ps 1.5 title 'resnet_v1', \
     '' using ($3/1024):(strcol(1) eq 'resnet_v1' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle, \
     'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'resnet_v2' ? 100*$4 : NaN) with points pt 7 ps 1.5 title 'resnet_v2', \
     '' using ($3/1024):(strcol(1) eq 'resnet_v2' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle, \
     'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'mobilenet_v1' ? 100*$4 : NaN) with points pt 8 ps 1.5 title 'mobilenet_v1', \
     '' using ($3/1024):(strcol(1) eq 'mobilenet_v1' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle, \
     'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'mobilenet_v2' ? 100*$4 : NaN) with points pt 9 ps 1.5 title 'mobilenet_v2', \
     '' using ($3/1024):(strcol(1) eq 'mobilenet_v2' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle
set terminal svg size 900,560
set output 'study-cifar10.svg'
plot 'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'custom' ? 100*$4 : NaN) with points pt 5 ps 1.5 title 'custom', \
     '' using ($3/1024):(strcol(1) eq 'custom' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle, \
     'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'resnet_v1' ? 100*$4 : NaN) with points pt 6 ps 1.5 title 'resnet_v1', \
     '' using ($3/1024):(strcol(1) eq 'resnet_v1' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle, \
     'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'resnet_v2' ? 100*$4 : NaN) with points pt 7 ps 1.5 title 'resnet_v2', \
     '' using ($3/1024):(strcol(1) eq 'resnet_v2' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle, \
     'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'mobilenet_v1' ? 100*$4 : NaN) with points pt 8 ps 1.5 title 'mobilenet_v1', \
     '' using ($3/1024):(strcol(1) eq 'mobilenet_v1' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle, \
     'study-cifar10.csv' using ($3/1024):(strcol(1) eq 'mobilenet_v2' ? 100*$4 : NaN) with points pt 9 ps 1.5 title 'mobilenet_v2', \
     '' using ($3/1024):(strcol(1) eq 'mobilenet_v2' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle
