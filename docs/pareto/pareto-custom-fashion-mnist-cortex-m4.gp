# made by quantlab pareto; reads pareto-custom-fashion-mnist-cortex-m4.csv
set datafile separator ','
set grid
set key outside right
set xlabel 'flash (KiB)'
set ylabel 'predicted validation loss'
set title 'custom on fashion-mnist, cortex-m4'
set y2label 'test accuracy (%)'
set y2tics
set ytics nomirror
set terminal png size 900,560
set output 'pareto-custom-fashion-mnist-cortex-m4.png'
plot 'pareto-custom-fashion-mnist-cortex-m4.csv' every ::1 using ($1/1024):2 with linespoints pt 7 title 'predicted loss (exact search)', '' every ::1 using ($1/1024):(100*$3) axes x1y2 with linespoints pt 5 title 'measured accuracy', '' every ::1 using ($1/1024):(100*$4) axes x1y2 with points pt 2 title 'random policies (mean)'
set terminal svg size 900,560
set output 'pareto-custom-fashion-mnist-cortex-m4.svg'
plot 'pareto-custom-fashion-mnist-cortex-m4.csv' every ::1 using ($1/1024):2 with linespoints pt 7 title 'predicted loss (exact search)', '' every ::1 using ($1/1024):(100*$3) axes x1y2 with linespoints pt 5 title 'measured accuracy', '' every ::1 using ($1/1024):(100*$4) axes x1y2 with points pt 2 title 'random policies (mean)'
